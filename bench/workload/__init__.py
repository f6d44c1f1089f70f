"""What is trained: models and their layers (models), datasets and readers (data), how data is split over ranks
or clients (partition), mini-batches (loader), injected slowness (stragglers)."""
