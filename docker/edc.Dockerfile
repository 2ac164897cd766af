# The demo EDC connectors (provider and consumer run the same image): the runtime classpath assembled by
# demo/edc/pom.xml from Maven Central plus the two demo extensions, exactly as the tests build it
# (demo/connectors.py build). Which connector a container is comes from its properties file.
FROM maven:3.9-eclipse-temurin-17 AS build
WORKDIR /build
COPY demo/edc demo/edc
RUN mvn -q -B -f demo/edc/pom.xml dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory=/build/lib \
 && mvn -q -B -f demo/edc/seed-vault/pom.xml package \
 && mvn -q -B -f demo/edc/public-api/pom.xml package \
 && cp demo/edc/seed-vault/target/demo-seed-vault.jar demo/edc/public-api/target/demo-public-api.jar /build/lib/

FROM eclipse-temurin:17-jre
COPY --from=build /build/lib /opt/edc/lib
COPY demo/edc/provider.properties demo/edc/consumer.properties /opt/edc/
ENTRYPOINT ["java", "-Xmx512m", "-cp", "/opt/edc/lib/*", "org.eclipse.edc.boot.system.runtime.BaseRuntime"]
