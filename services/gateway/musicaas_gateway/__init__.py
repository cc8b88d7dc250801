"""The gateway: the only public entry of musicaas (``musicaas.gateway.v1.GatewayService``)."""
