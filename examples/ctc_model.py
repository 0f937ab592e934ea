"""A small CTC recogniser over landmarks: per-frame encoder -> 2-layer BiLSTM -> gloss logits.

The example model of ``ctc_training`` (and ``examples/train_ctc.py``), not a tuned one.
Landmarks are centred on the shoulder midpoint and scaled by the shoulder width, frame by frame.
"""
from __future__ import annotations

from typing import List, Tuple

import torch
from torch import nn

from phoenix_data.vocab import BLANK_INDEX

LEFT_SHOULDER = 11  # pose-format / MediaPipe pose indices (pose points come first in a frame)
RIGHT_SHOULDER = 12
MIN_SHOULDER_WIDTH = 1e-3  # in image widths; below this the pose is degenerate, treat as missing
COORDINATES = 2  # x and y; MediaPipe's z is too noisy to help this example


def normalize_landmarks(landmarks: torch.Tensor, confidence: torch.Tensor) -> torch.Tensor:
    """Centre each frame on the shoulder midpoint and divide by the shoulder width.

    landmarks (Tensor[B, T, N, 3]), confidence (Tensor[B, T, N]) -> Tensor[B, T, N, 2] (x, y).
    A frame without both shoulders (confidence 0) borrows the mean centre and width of the
    sample's frames that have them (the identity when none has); points with confidence 0 stay 0.
    """
    xy = landmarks[..., :COORDINATES]
    left, right = xy[:, :, LEFT_SHOULDER], xy[:, :, RIGHT_SHOULDER]  # [B, T, 2]
    centre = (left + right) / 2
    width = (left - right).norm(dim=-1)  # [B, T]
    valid = (confidence[:, :, LEFT_SHOULDER] > 0) & (confidence[:, :, RIGHT_SHOULDER] > 0)
    valid &= width > MIN_SHOULDER_WIDTH
    weight = valid.float()
    count = weight.sum(dim=1, keepdim=True)  # [B, 1]
    mean_centre = (centre * weight[..., None]).sum(dim=1, keepdim=True) / count.clamp(min=1)[..., None]
    mean_width = (width * weight).sum(dim=1, keepdim=True) / count.clamp(min=1)
    mean_width = torch.where(count > 0, mean_width, torch.ones_like(mean_width))
    centre = torch.where(valid[..., None], centre, mean_centre.expand_as(centre))
    width = torch.where(valid, width, mean_width.expand_as(width))
    out = (xy - centre[:, :, None]) / width[:, :, None, None]
    return out * (confidence > 0)[..., None]


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

    def forward(self, landmarks: torch.Tensor, confidence: torch.Tensor,
                lengths: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """landmarks (Tensor[B, T, N, 3]), confidence (Tensor[B, T, N]), lengths (LongTensor[B]) ->
        log-probabilities (Tensor[T', B, V], as ``nn.CTCLoss`` takes them) and their lengths (LongTensor[B])."""
        features = normalize_landmarks(landmarks, confidence).flatten(2)  # [B, T, N*2]
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
