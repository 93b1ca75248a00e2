"""LoRA fine-tuning of code models on instruction data: ``kodcu-train CONFIG.yaml``."""
