"""A small CTC recogniser over landmarks: per-frame encoder -> 2-layer BiLSTM -> gloss logits.

The example model of ``ctc_training`` (and ``examples/train_ctc.py``), not a tuned one. It takes
landmarks as ``phoenix_data.transforms.Normalize`` leaves them (the datasets' transform in
``ctc_training``): centred on the shoulder midpoint, scaled by the shoulder width, frame by frame;
points MediaPipe did not find are exactly zero.
"""
from __future__ import annotations

from typing import List, Tuple

import torch
from torch import nn

from phoenix_data.vocab import BLANK_INDEX

COORDINATES = 2  # x and y; MediaPipe's z is too noisy to help this example


class CtcRecognizer(nn.Module):
    """Per-frame MLP encoder, 2-layer BiLSTM, linear layer to the vocabulary (blank = 0).

    ``frame_repeat`` repeats every frame (CTC needs at least one frame per gloss; only very short
    videos, like the demo's, need it).
    """

    def __init__(self, num_points: int, vocab_size: int, hidden: int = 256, dropout: float = 0.2,
                 frame_repeat: int = 1) -> None:
        super().__init__()
        self.frame_repeat = frame_repeat
        self.encoder = nn.Sequential(
            nn.Linear(num_points * COORDINATES, hidden), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(hidden, hidden), nn.ReLU(), nn.Dropout(dropout))
        self.lstm = nn.LSTM(hidden, hidden, num_layers=2, bidirectional=True, batch_first=True,
                            dropout=dropout)
        self.classifier = nn.Linear(2 * hidden, vocab_size)

    def forward(self, landmarks: torch.Tensor, lengths: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """landmarks (Tensor[B, T, N, 3], normalised), lengths (LongTensor[B]) -> log-probabilities
        (Tensor[T', B, V], as ``nn.CTCLoss`` takes them) and their lengths (LongTensor[B])."""
        features = landmarks[..., :COORDINATES].flatten(2)  # [B, T, N*2]
        if self.frame_repeat > 1:
            features = features.repeat_interleave(self.frame_repeat, dim=1)
            lengths = lengths * self.frame_repeat
        encoded = self.encoder(features)
        packed = nn.utils.rnn.pack_padded_sequence(encoded, lengths.cpu(), batch_first=True, enforce_sorted=False)
        output, _ = self.lstm(packed)
        output, _ = nn.utils.rnn.pad_packed_sequence(output, batch_first=True, total_length=features.shape[1])
        return self.classifier(output).log_softmax(-1).transpose(0, 1), lengths


def greedy_decode(log_probs: torch.Tensor, lengths: torch.Tensor, blank: int = BLANK_INDEX) -> List[List[int]]:
    """Best path: the most likely class per frame, repeats merged, blanks dropped.

    log_probs (Tensor[T, B, V]), lengths (LongTensor[B]) -> one list of class ids per sample.
    """
    best = log_probs.argmax(dim=-1).t().tolist()  # [B][T]
    decoded = []
    for path, length in zip(best, lengths.tolist()):
        path = path[:length]
        decoded.append([c for t, c in enumerate(path) if c != blank and (t == 0 or c != path[t - 1])])
    return decoded
