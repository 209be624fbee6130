"""Model summaries, plots and Grad-CAM."""
