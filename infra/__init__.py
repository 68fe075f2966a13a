"""The Pulumi program that provisions EventForge on AWS, one stack per environment."""
