"""Pretrained weights, one converter per source."""
