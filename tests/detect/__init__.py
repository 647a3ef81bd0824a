"""Tests for receiver.detect."""
