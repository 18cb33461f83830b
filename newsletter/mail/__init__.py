"""A digest made into a message: templates rendered, MIME built, DKIM-signed, tokens."""
