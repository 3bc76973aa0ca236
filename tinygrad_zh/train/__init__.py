"""The training loop: Trainer and TrainingArguments."""
