"""Stands in for mediapipe in tests that are not marked ``mediapipe`` (tests/conftest.py puts this folder first
on sys.path and PYTHONPATH for them): such a test that reaches MediaPipe fails loudly instead of quietly
running it. ``PYTHONPATH=tests/no_mediapipe pytest -m "not mediapipe"`` is also how CI shows that the fast
subset needs no MediaPipe at all."""
raise ImportError("an unmarked test reached MediaPipe: mark it @pytest.mark.mediapipe (or use a fixture that "
                  "marks it, e.g. holistic_settings), or give it FakeExtractorSettings()")
