{{/*
The exporter's pod, the same for the Deployment (every pod watches every pool) and the StatefulSet
(`sharding.enabled`: each pod watches its shard of the pools). Written at the indentation of
`spec.template` in both.
*/}}
{{- define "session-pool-exporter.podTemplate" }}
    metadata:
      labels:
        {{- include "session-pool-exporter.selectorLabels" . | nindent 8 }}
        {{- with .Values.podLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      annotations:
        # A change of the configuration or of the chart-managed Secret rolls the pods.
        checksum/config: {{ include (print $.Template.BasePath "/configmap.yaml") . | sha256sum }}
        checksum/secret: {{ include (print $.Template.BasePath "/secret.yaml") . | sha256sum }}
        {{- with .Values.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      serviceAccountName: {{ include "session-pool-exporter.serviceAccountName" . }}
      automountServiceAccountToken: false
      {{- with .Values.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with .Values.priorityClassName }}
      priorityClassName: {{ . }}
      {{- end }}
      securityContext:
        {{- toYaml .Values.podSecurityContext | nindent 8 }}
      containers:
        - name: exporter
          image: {{ include "session-pool-exporter.image" . | quote }}
          imagePullPolicy: {{ .Values.image.pullPolicy }}
          args:
            - run
            - --config
            - /etc/session-pool-exporter/config.yaml
          ports:
            - name: metrics
              containerPort: {{ .Values.containerPort }}
              protocol: TCP
            {{- if include "session-pool-exporter.adminEnabled" . }}
            - name: admin
              containerPort: {{ .Values.admin.containerPort }}
              protocol: TCP
            {{- end }}
          {{- if or .Values.existingSecret .Values.secret.mongodbUri .Values.secret.adminToken .Values.extraEnv .Values.sharding.enabled }}
          env:
            {{- if .Values.sharding.enabled }}
            # This pod's shard: the StatefulSet's ordinal (the pod-index label, Kubernetes >= 1.28).
            - name: SESSION_POOL_EXPORTER_SHARD__INDEX
              valueFrom:
                fieldRef:
                  fieldPath: metadata.labels['apps.kubernetes.io/pod-index']
            {{- end }}
            {{- if or .Values.existingSecret .Values.secret.mongodbUri }}
            - name: SESSION_POOL_EXPORTER_MONGODB__URI
              valueFrom:
                secretKeyRef:
                  name: {{ include "session-pool-exporter.secretName" . }}
                  key: {{ .Values.secretKeys.mongodbUri }}
            {{- end }}
            {{- if and .Values.secretKeys.adminToken (or .Values.existingSecret .Values.secret.adminToken) }}
            - name: SESSION_POOL_EXPORTER_ADMIN_TOKEN
              valueFrom:
                secretKeyRef:
                  name: {{ include "session-pool-exporter.secretName" . }}
                  key: {{ .Values.secretKeys.adminToken }}
                  # With an existing Secret the admin token is optional: no key, no admin API.
                  optional: {{ not (empty .Values.existingSecret) }}
            {{- end }}
            {{- with .Values.extraEnv }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          {{- end }}
          livenessProbe:
            httpGet:
              path: /healthz
              port: metrics
              scheme: {{ include "session-pool-exporter.scheme" . | upper }}
            {{- toYaml .Values.livenessProbe | nindent 12 }}
          readinessProbe:
            httpGet:
              path: /readyz
              port: metrics
              scheme: {{ include "session-pool-exporter.scheme" . | upper }}
            {{- toYaml .Values.readinessProbe | nindent 12 }}
          securityContext:
            {{- toYaml .Values.securityContext | nindent 12 }}
          resources:
            {{- toYaml .Values.resources | nindent 12 }}
          volumeMounts:
            - name: config
              mountPath: /etc/session-pool-exporter/config.yaml
              subPath: config.yaml
              readOnly: true
            - name: tmp
              mountPath: /tmp
            {{- if .Values.config.admin.tokens }}
            - name: admin-tokens
              mountPath: {{ include "session-pool-exporter.tokenDir" . }}
              readOnly: true
            {{- end }}
            {{- if .Values.tls.enabled }}
            - name: tls
              mountPath: {{ include "session-pool-exporter.tlsDir" . }}
              readOnly: true
            {{- end }}
      volumes:
        - name: config
          configMap:
            name: {{ include "session-pool-exporter.fullname" . }}
        # The root filesystem is read-only; libraries that need a scratch directory get this one.
        - name: tmp
          emptyDir:
            sizeLimit: 16Mi
        {{- if .Values.config.admin.tokens }}
        - name: admin-tokens
          secret:
            secretName: {{ include "session-pool-exporter.secretName" . }}
            defaultMode: 0440
            items:
              {{- range .Values.config.admin.tokens }}
              - key: admin-token-{{ .name }}
                path: admin-token-{{ .name }}
              {{- end }}
        {{- end }}
        {{- if .Values.tls.enabled }}
        - name: tls
          secret:
            secretName: {{ required "tls.secretName is required when tls.enabled is true" .Values.tls.secretName }}
            defaultMode: 0440
        {{- end }}
      {{- with .Values.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with .Values.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with .Values.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with .Values.topologySpreadConstraints }}
      topologySpreadConstraints:
        {{- toYaml . | nindent 8 }}
      {{- end }}
{{- end }}
