package org.eclipse.edc.demo.publicapi;

import jakarta.ws.rs.GET;
import jakarta.ws.rs.HeaderParam;
import jakarta.ws.rs.Path;
import jakarta.ws.rs.PathParam;
import jakarta.ws.rs.core.HttpHeaders;
import jakarta.ws.rs.core.Response;
import org.eclipse.edc.connector.dataplane.spi.iam.DataPlaneAuthorizationService;
import org.eclipse.edc.spi.monitor.Monitor;

import java.io.IOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.time.Duration;
import java.util.Map;

/**
 * {@code GET /{path}} with the EDR's token in {@code Authorization}: 401 without a token, 403 when the data
 * plane refuses it, otherwise the body of the asset's {@code HttpData} source ({@code baseUrl}, plus
 * {@code path} when the source has {@code proxyPath=true}) with its status and content type.
 */
@Path("/")
public class PublicApiController {

    private final DataPlaneAuthorizationService authorizationService;
    private final Monitor monitor;
    private final HttpClient client = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(10)).build();

    public PublicApiController(DataPlaneAuthorizationService authorizationService, Monitor monitor) {
        this.authorizationService = authorizationService;
        this.monitor = monitor;
    }

    @GET
    public Response getRoot(@HeaderParam(HttpHeaders.AUTHORIZATION) String token) {
        return get(token, "");
    }

    @GET
    @Path("{path: .+}")
    public Response getPath(@HeaderParam(HttpHeaders.AUTHORIZATION) String token, @PathParam("path") String path) {
        return get(token, path);
    }

    private Response get(String token, String path) {
        if (token == null || token.isBlank()) {
            return Response.status(Response.Status.UNAUTHORIZED).entity("missing Authorization header").build();
        }
        var authorized = authorizationService.authorize(token, Map.of("method", "GET", "path", path));
        if (authorized.failed()) {
            return Response.status(Response.Status.FORBIDDEN).entity(authorized.getFailureDetail()).build();
        }
        var source = authorized.getContent();
        var baseUrl = source.getStringProperty("baseUrl");
        if (baseUrl == null) {
            return Response.status(Response.Status.BAD_GATEWAY).entity("the source has no baseUrl").build();
        }
        var url = "true".equalsIgnoreCase(source.getStringProperty("proxyPath")) && !path.isEmpty()
                ? baseUrl.replaceAll("/+$", "") + "/" + path
                : baseUrl;
        try {
            var response = client.send(HttpRequest.newBuilder(URI.create(url)).timeout(Duration.ofSeconds(60)).GET().build(),
                    HttpResponse.BodyHandlers.ofByteArray());
            var type = response.headers().firstValue("Content-Type").orElse("application/octet-stream");
            return Response.status(response.statusCode()).type(type).entity(response.body()).build();
        } catch (IOException e) {
            monitor.warning("Demo public API: source " + url + " failed", e);
            return Response.status(Response.Status.BAD_GATEWAY).entity("source failed: " + e.getMessage()).build();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return Response.status(Response.Status.SERVICE_UNAVAILABLE).build();
        }
    }
}
