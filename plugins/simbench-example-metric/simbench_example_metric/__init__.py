"""Example simbench plugin: the ``mean_corr`` metric (see README.md)."""

from simbench_example_metric.metric import MeanCorrelation, simbench_register_metrics

__all__ = ["MeanCorrelation", "simbench_register_metrics"]
__version__ = "0.1.0"
