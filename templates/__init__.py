"""The digest's Jinja2 templates (`digest.html`, `digest.txt`). They stay at the top of the
checkout and ship inside the package as `newsletter.templates` (see pyproject.toml), so that an
installed wheel renders digests as the checkout does."""
