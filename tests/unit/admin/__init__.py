"""Tests of exporter.admin."""
