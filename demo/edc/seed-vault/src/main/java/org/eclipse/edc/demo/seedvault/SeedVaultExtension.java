package org.eclipse.edc.demo.seedvault;

import org.eclipse.edc.runtime.metamodel.annotation.Inject;
import org.eclipse.edc.spi.security.Vault;
import org.eclipse.edc.spi.system.ServiceExtension;
import org.eclipse.edc.spi.system.ServiceExtensionContext;

/**
 * Stores every {@code edc.demo.vault.secrets.<alias>=<value>} setting in the vault at boot, for the
 * runtime itself and for its participant context, so that callbacks with an auth header
 * ({@code authCodeId} / {@code edc.callback.<name>.auth-code-id}) find their secret.
 */
public class SeedVaultExtension implements ServiceExtension {

    @Inject
    private Vault vault;

    @Override
    public String name() {
        return "Demo seed vault";
    }

    @Override
    public void initialize(ServiceExtensionContext context) {
        var participantId = context.getConfig().getString("edc.participant.id", null);
        var secrets = context.getConfig("edc.demo.vault.secrets").getRelativeEntries();
        secrets.forEach((alias, value) -> {
            vault.storeSecret(alias, value);
            if (participantId != null) {
                storeForParticipant(vault, participantId, alias, value);
            }
        });
        context.getMonitor().info("Demo seed vault: stored " + secrets.size() + " secret(s)");
    }

    /**
     * {@code Vault.storeSecret(participantContextId, alias, value)} where the vault has it (EDC 0.15 and later);
     * called reflectively so that this extension compiles against older EDC versions, whose vault has no
     * participant contexts.
     */
    static void storeForParticipant(Vault vault, String participantId, String alias, String value) {
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
