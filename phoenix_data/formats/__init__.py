"""The field's file formats: pose-format's ``.pose`` files (``formats.poses``)."""
