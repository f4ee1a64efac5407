"""Neural modules and losses: observation encoders, skill policies, the skill VAE, controllers."""
