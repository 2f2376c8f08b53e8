"""Console recordings (asciicast v2)."""
