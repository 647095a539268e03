"""The node's journal: entries with filters and cursor paging, and a followed stream, read by
streaming Debian's journalctl (JSON output) so memory stays bounded whatever the journal's size."""
