CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}' IN ROLE arbfleet_writer;
ALTER ROLE "{{name}}" SET role = 'arbfleet_writer';
