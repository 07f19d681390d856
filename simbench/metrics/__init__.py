"""Built-in similarity metrics (MATH.md: Representation similarity, Weight-covariance)."""
