"""FairMOT's joint detection + re-ID loss (``ifzhang/FairMOT@4aa6297`` ``src/lib/trains/mot.py``).

``loss = 0.5 * (exp(-s_det) * L_det + exp(-s_id) * L_id + s_det + s_id)`` (the "uncertainty" multi-task
weighting of Kendall et al., FairMOT's default ``--multi_loss uncertainty``), with
``L_det = 1 * L_focal(hm) + 0.1 * L1(wh) + 1 * L1(reg)`` and ``L_id`` the cross-entropy of a linear
classifier over training identities applied to ``emb_scale * normalize(id)``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def focal_loss(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """CenterNet's penalty-reduced pixel focal loss (``models/losses.py`` ``_neg_loss``; alpha 2, beta 4).

    Args:
        pred: (B, C, H, W) probabilities in (0, 1) (sigmoid already applied and clamped).
        gt: (B, C, H, W) gaussian heatmap targets, 1 exactly at object centres.

    Returns:
        Scalar: ``-(sum pos + sum neg) / num_pos`` (``-sum neg`` when there is no positive).
    """
    pos = gt.eq(1).float()
    neg = gt.lt(1).float()
    neg_weights = torch.pow(1 - gt, 4)
    pos_loss = (torch.log(pred) * torch.pow(1 - pred, 2) * pos).sum()
    neg_loss = (torch.log(1 - pred) * torch.pow(pred, 2) * neg_weights * neg).sum()
    num_pos = pos.sum()
    if num_pos == 0:
        return -neg_loss
    return -(pos_loss + neg_loss) / num_pos


def gather_feat(feat: torch.Tensor, ind: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) map, (B, K) flat indices -> (B, K, C) (``_tranpose_and_gather_feat``)."""
    b, c = feat.shape[:2]
    flat = feat.reshape(b, c, -1).permute(0, 2, 1)  # (B, HW, C)
    return flat.gather(1, ind.unsqueeze(2).expand(-1, -1, c))


def reg_l1_loss(output: torch.Tensor, mask: torch.Tensor, ind: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``RegL1Loss``: L1 over the gathered object cells, summed, divided by ``mask.sum() + 1e-4``.

    Args:
        output: (B, C, H, W) regression map; mask: (B, K); ind: (B, K); target: (B, K, C).
    """
    pred = gather_feat(output, ind)
    m = mask.unsqueeze(2).expand_as(pred).float()
    return F.l1_loss(pred * m, target * m, reduction="sum") / (m.sum() + 1e-4)


def clamped_sigmoid(x: torch.Tensor) -> torch.Tensor:
    """``_sigmoid``: sigmoid clamped to [1e-4, 1 - 1e-4] so the focal loss stays finite."""
    return torch.clamp(torch.sigmoid(x), min=1e-4, max=1 - 1e-4)


class FairMOTLoss(nn.Module):
    """The FairMOT training loss; its ID classifier and the two uncertainty weights are trainable.

    Args:
        num_ids: number of training identities ``nID`` (classifier outputs); must be >= 2.
        emb_dim: re-ID embedding size (128).
        hm_weight, wh_weight, off_weight: FairMOT defaults 1, 0.1, 1.
        id_weight: 0 switches the ID branch off (the loss is then ``L_det`` with uncertainty weighting).
    """

    def __init__(
        self,
        num_ids: int,
        emb_dim: int = 128,
        hm_weight: float = 1.0,
        wh_weight: float = 0.1,
        off_weight: float = 1.0,
        id_weight: float = 1.0,
    ) -> None:
        super().__init__()
        if num_ids < 2:
            raise ValueError(f"FairMOTLoss needs >= 2 training identities, got {num_ids}")
        self.num_ids = num_ids
        self.hm_weight, self.wh_weight, self.off_weight, self.id_weight = hm_weight, wh_weight, off_weight, id_weight
        self.classifier = nn.Linear(emb_dim, num_ids)
        self.emb_scale = math.sqrt(2) * math.log(num_ids - 1)
        # Initial values from upstream MotLoss.__init__.
        self.s_det = nn.Parameter(-1.85 * torch.ones(1))
        self.s_id = nn.Parameter(-1.05 * torch.ones(1))

    def forward(self, out: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        """Args: ``out`` model heads (hm logits); ``batch`` targets from :func:`build_targets`, stacked.

        Returns:
            ``(loss, logs)`` with logs ``hm, wh, off, id, det`` as floats.
        """
        hm_loss = focal_loss(clamped_sigmoid(out["hm"]), batch["hm"])
        wh_loss = reg_l1_loss(out["wh"], batch["reg_mask"], batch["ind"], batch["wh"])
        off_loss = reg_l1_loss(out["reg"], batch["reg_mask"], batch["ind"], batch["reg"])
        det_loss = self.hm_weight * hm_loss + self.wh_weight * wh_loss + self.off_weight * off_loss
        id_loss = out["hm"].new_zeros(())
        if self.id_weight > 0:
            emb = gather_feat(out["id"], batch["ind"])[batch["reg_mask"] > 0]  # (N, 128)
            target = batch["ids"][batch["reg_mask"] > 0]
            if emb.shape[0] > 0 and bool((target >= 0).any()):
                logits = self.classifier(self.emb_scale * F.normalize(emb, dim=1))
                id_loss = F.cross_entropy(logits, target, ignore_index=-1)
            else:  # keep every parameter in the graph (DDP) at zero weight
                id_loss = 0.0 * (sum(p.sum() for p in self.classifier.parameters()) + out["id"].sum())
        loss = 0.5 * (torch.exp(-self.s_det) * det_loss + torch.exp(-self.s_id) * id_loss + self.s_det + self.s_id)
        logs = {
            "hm": float(hm_loss.detach()),
            "wh": float(wh_loss.detach()),
            "off": float(off_loss.detach()),
            "id": float(id_loss.detach()),
            "det": float(det_loss.detach()),
        }
        return loss.squeeze(), logs
