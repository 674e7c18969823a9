"""Kafka client settings shared by every Kafka edge: the validated connection (bootstrap
servers, SASL, TLS) turned into kafka-python, aiokafka and faust arguments, and the one clear
error line for a refused connection. Installed as ``playstream.clients``."""
