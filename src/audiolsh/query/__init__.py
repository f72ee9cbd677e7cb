"""The questions a library answers: identify, similar, nearest, clusters, overlaps, and their JSON
records."""
