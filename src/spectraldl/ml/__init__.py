"""Networks and what is made with them.

Training and fine-tuning, evaluation, the model card, novelty, int8 and the
shipped models.
"""
