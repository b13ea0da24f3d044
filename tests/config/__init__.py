"""Tests of exporter.config."""
