"""Drills: boot the local pod, break it the way production breaks, and measure what survives."""
