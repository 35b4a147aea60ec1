"""One controller per URL group; each takes the services it needs by injection and says which
problem responses it may answer (gateway/problems.py)."""
