"""systemd units, the journal and node power, over systemd's D-Bus API."""
