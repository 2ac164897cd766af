package org.eclipse.edc.demo.publicapi;

import org.eclipse.edc.connector.dataplane.spi.Endpoint;
import org.eclipse.edc.connector.dataplane.spi.iam.DataPlaneAuthorizationService;
import org.eclipse.edc.connector.dataplane.spi.iam.PublicEndpointGeneratorService;
import org.eclipse.edc.runtime.metamodel.annotation.Inject;
import org.eclipse.edc.spi.security.Vault;
import org.eclipse.edc.spi.system.ServiceExtension;
import org.eclipse.edc.spi.system.ServiceExtensionContext;
import org.eclipse.edc.web.spi.WebService;
import org.eclipse.edc.web.spi.configuration.PortMapping;
import org.eclipse.edc.web.spi.configuration.PortMappingRegistry;

import java.security.KeyPairGenerator;
import java.security.NoSuchAlgorithmException;
import java.security.spec.ECGenParameterSpec;
import java.util.Base64;

/**
 * The demo provider's public API for PULL transfers.
 *
 * <ul>
 *   <li>a web context {@code public} ({@code web.http.public.port}, {@code web.http.public.path});</li>
 *   <li>EDRs for {@code HttpData} point at {@code edc.demo.public.endpoint} (default: that context on localhost);</li>
 *   <li>the token signing key pair named by {@code edc.transfer.proxy.token.signer.privatekey.alias} and
 *       {@code edc.transfer.proxy.token.verifier.publickey.alias} is generated into the vault at boot when
 *       the vault does not hold it (an in-memory demo vault has nothing at boot).</li>
 * </ul>
 */
public class PublicApiExtension implements ServiceExtension {

    static final String CONTEXT = "public";

    @Inject
    private PortMappingRegistry portMappingRegistry;
    @Inject
    private WebService webService;
    @Inject
    private PublicEndpointGeneratorService endpointGenerator;
    @Inject
    private DataPlaneAuthorizationService authorizationService;
    @Inject
    private Vault vault;

    @Override
    public String name() {
        return "Demo data plane public API";
    }

    @Override
    public void initialize(ServiceExtensionContext context) {
        var config = context.getConfig();
        var port = config.getInteger("web.http.public.port", 19195);
        var path = config.getString("web.http.public.path", "/public");
        portMappingRegistry.register(new PortMapping(CONTEXT, port, path));
        var endpoint = config.getString("edc.demo.public.endpoint", "http://localhost:" + port + path);
        endpointGenerator.addGeneratorFunction("HttpData", address -> Endpoint.url(endpoint));
        webService.registerResource(CONTEXT, new PublicApiController(authorizationService, context.getMonitor()));
        seedTokenKeys(
                config.getString("edc.participant.id", null),
                config.getString("edc.transfer.proxy.token.signer.privatekey.alias", null),
                config.getString("edc.transfer.proxy.token.verifier.publickey.alias", null));
        context.getMonitor().info("Demo public API: EDRs for HttpData point at " + endpoint);
    }

    private void store(String participantId, String alias, String value) {
        vault.storeSecret(alias, value);
        if (participantId != null) {
            storeForParticipant(participantId, alias, value);
        }
    }

    private void seedTokenKeys(String participantId, String privateAlias, String publicAlias) {
        if (privateAlias == null || publicAlias == null
                || (vault.resolveSecret(privateAlias) != null && vault.resolveSecret(publicAlias) != null)) {
            return;
        }
        try {
            var generator = KeyPairGenerator.getInstance("EC");
            generator.initialize(new ECGenParameterSpec("secp256r1"));
            var pair = generator.generateKeyPair();
            store(participantId, privateAlias, pem("PRIVATE KEY", pair.getPrivate().getEncoded()));
            store(participantId, publicAlias, pem("PUBLIC KEY", pair.getPublic().getEncoded()));
        } catch (NoSuchAlgorithmException | java.security.InvalidAlgorithmParameterException e) {
            throw new IllegalStateException("cannot generate the EDR token keys", e);
        }
    }

    private static String pem(String type, byte[] der) {
        var body = Base64.getMimeEncoder(64, "\n".getBytes()).encodeToString(der);
        return "-----BEGIN " + type + "-----\n" + body + "\n-----END " + type + "-----\n";
    }

    /**
     * {@code Vault.storeSecret(participantContextId, alias, value)} where the vault has it (EDC 0.15 and later);
     * called reflectively so that this extension compiles against older EDC versions.
     */
    private void storeForParticipant(String participantId, String alias, String value) {
        try {
            Vault.class.getMethod("storeSecret", String.class, String.class, String.class)
                    .invoke(vault, participantId, alias, value);
        } catch (NoSuchMethodException e) {
            // EDC before 0.15: one vault for the runtime
        } catch (ReflectiveOperationException e) {
            throw new IllegalStateException("cannot store secret " + alias + " for " + participantId, e);
        }
    }
}
