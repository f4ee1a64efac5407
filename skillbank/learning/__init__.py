"""Learning rules: segmentation, skill encoding, per-skill training, adaptation."""
