"""From finished stage shards to the published form: the two dataset configs and their card."""
