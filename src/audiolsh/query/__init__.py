"""The questions a library answers: identify, similar, nearest, clusters, and their JSON records."""
