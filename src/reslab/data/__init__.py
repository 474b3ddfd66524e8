"""Datasets in their official formats, the paper's splits, and device-side augmentation."""

from reslab.data.augment import BatchAugment, center_crop, crop_flip, normalize, pca_lighting, ten_crop
from reslab.data.datasets import (
    DATASET_NAMES,
    DatasetSpec,
    InMemoryDataset,
    dataset_spec,
    download_dataset,
    find_data_dir,
    load_dataset,
    per_pixel_mean,
)
from reslab.data.folder import folder_classes, folder_dataset, folder_loader, multiscale_views

__all__ = [
    "DATASET_NAMES",
    "BatchAugment",
    "DatasetSpec",
    "InMemoryDataset",
    "center_crop",
    "crop_flip",
    "dataset_spec",
    "download_dataset",
    "find_data_dir",
    "folder_classes",
    "folder_dataset",
    "folder_loader",
    "load_dataset",
    "multiscale_views",
    "normalize",
    "pca_lighting",
    "per_pixel_mean",
    "ten_crop",
]
