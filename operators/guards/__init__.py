"""Guard models: safety classifiers with their own signals (ShieldGemma 2 as `shieldgemma:`)."""
