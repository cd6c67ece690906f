"""Image captioning: one-to-many generation of a caption from a photo (the task module is tasks.captioning.task)."""
