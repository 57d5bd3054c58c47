"""Running past one process: collective guards, and the Ray driver (``pip install 'azr[ray]'``)."""
