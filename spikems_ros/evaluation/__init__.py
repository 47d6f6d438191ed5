"""Evaluation of segmentation: metrics, runners and reports."""
