"""What every part shares: user errors, the console, progress bars, the webhook, metric names."""
