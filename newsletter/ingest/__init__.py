"""Papers in: the text dumps and the Daily Papers API's answers, fetched, parsed and stored."""
