"""Training-time compression: pruning schedule, distillation loss, compression-aware fine-tune."""
