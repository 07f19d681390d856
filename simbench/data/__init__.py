"""Dataset plugins: labelled uint8 images with a train/test split."""
