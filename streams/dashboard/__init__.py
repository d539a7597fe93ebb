"""`megatrading dashboard`: a live web page over what the workers publish to Redis (server.py), with the
venue units turned into a person's (units.py, views.py), Redis read as it is (store.py), the live feed
relayed from `mt:forecasts` (live.py) and consumer lag read from Kafka (lag.py)."""
