"""Tests of autoresearch.scoring and of the GPT template's split evaluate phase."""
