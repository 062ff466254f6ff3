"""`syllabus finetune`: specialise an existing small model on Syllabus data (full, LoRA, QLoRA)
with the same trainer as `syllabus train`, and prove the gain on the exported file."""
