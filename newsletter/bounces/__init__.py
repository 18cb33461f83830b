"""Mail back: bounce mailboxes read, DSN/ARF understood, the rules applied to readers."""
