"""Rate-distortion evaluation: BD-rate, the x265 anchor, and reports on encoded folders."""
