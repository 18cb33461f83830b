"""Messages out: SMTP with its fault rules, fast DATA, the dry-run's files, workers."""
