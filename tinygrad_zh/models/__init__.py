"""Complete models, one readable file each."""
