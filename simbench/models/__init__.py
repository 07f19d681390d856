"""Architecture plugins: build an ``nn.Module`` and name its comparable layers."""
