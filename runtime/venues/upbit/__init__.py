"""venues/upbit"""
