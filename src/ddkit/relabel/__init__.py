"""Soft labels: from one teacher or a rescaled ensemble, computed online or stored compactly."""

from ddkit.models.ensemble import EnsembleModel, rescale_to_common_norm
from ddkit.relabel.stored import StoredLabels, fkd_bytes_per_image_epoch, record_soft_labels

__all__ = ["EnsembleModel", "StoredLabels", "fkd_bytes_per_image_epoch", "record_soft_labels", "rescale_to_common_norm"]
