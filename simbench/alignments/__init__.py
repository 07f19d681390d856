"""Built-in alignments (MATH.md: Alignments): fit(X, Y) -> T with Y ≈ X T."""
