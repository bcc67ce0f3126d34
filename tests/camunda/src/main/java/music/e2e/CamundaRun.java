package music.e2e;

import java.util.List;
import org.camunda.bpm.engine.OptimisticLockingException;
import org.camunda.bpm.engine.ProcessEngine;
import org.camunda.bpm.engine.ProcessEngineConfiguration;
import org.camunda.bpm.engine.TaskService;
import org.camunda.bpm.engine.exception.NullValueException;
import org.camunda.bpm.engine.impl.cfg.ProcessEngineConfigurationImpl;
import org.camunda.bpm.engine.impl.persistence.StrongUuidGenerator;
import org.camunda.bpm.engine.task.Task;
import org.camunda.bpm.model.bpmn.Bpmn;
import org.camunda.bpm.model.bpmn.BpmnModelInstance;

/**
 * CamundaRun drives a Camunda 7 engine (MariaDB Connector/J, databaseType mysql, READ COMMITTED,
 * no job executor) against one JDBC URL, normally a site's `music gateway`.
 *
 * <p>Usage: CamundaRun JDBC_URL MODE [ARG], with MODE one of
 *
 * <ul>
 *   <li>{@code schema}: create the engine's tables (databaseSchemaUpdate=true);
 *   <li>{@code start N}: deploy the process {@value #PROCESS} (one user task) and start N
 *       instances;
 *   <li>{@code work NAME}: complete open tasks of the process until none is left. Each attempt
 *       prints {"worker", "task", "outcome", "ms", "error"}, outcome ok, OptimisticLockingException,
 *       not found or other (error: the exception chain; at: when it started, epoch ms). A
 *       failed task query prints outcome "query error"; five in a row end the program.
 * </ul>
 *
 * The last line is {"done": MODE, ...} with the counts and the elapsed time.
 */
public final class CamundaRun {
  static final String PROCESS = "musicOneTask";

  private CamundaRun() {}

  public static void main(String[] args) {
    if (args.length < 2) {
      System.err.println("usage: CamundaRun JDBC_URL schema | start N | work NAME");
      System.exit(2);
    }
    String url = args[0];
    String mode = args[1];
    long t0 = System.nanoTime();
    ProcessEngine engine = engine(url, mode.equals("schema"), mode + (args.length > 2 ? "-" + args[2] : ""));
    long boot = (System.nanoTime() - t0) / 1_000_000;
    try {
      switch (mode) {
        case "schema" -> Json.line("done", mode, "boot_ms", boot);
        case "start" -> start(engine, Integer.parseInt(args[2]), boot);
        case "work" -> work(engine, args[2], boot);
        default -> {
          System.err.println("unknown mode " + mode);
          System.exit(2);
        }
      }
    } finally {
      engine.close();
    }
  }

  /** engine builds a standalone engine on url; schema creates or updates the tables. */
  static ProcessEngine engine(String url, boolean schema, String name) {
    ProcessEngineConfigurationImpl cfg =
        (ProcessEngineConfigurationImpl) ProcessEngineConfiguration.createStandaloneProcessEngineConfiguration();
    cfg.setProcessEngineName("music-" + name);
    cfg.setJdbcUrl(url);
    cfg.setJdbcDriver("org.mariadb.jdbc.Driver");
    cfg.setJdbcUsername("root");
    cfg.setJdbcPassword("");
    cfg.setDatabaseType("mysql");
    cfg.setDatabaseSchemaUpdate(schema ? ProcessEngineConfiguration.DB_SCHEMA_UPDATE_TRUE : ProcessEngineConfiguration.DB_SCHEMA_UPDATE_FALSE);
    cfg.setJobExecutorActivate(false);
    cfg.setHistory(ProcessEngineConfiguration.HISTORY_AUDIT);
    cfg.setIdGenerator(new StrongUuidGenerator()); // as in a cluster: no id blocks in ACT_GE_PROPERTY
    return cfg.buildProcessEngine();
  }

  static BpmnModelInstance process() {
    return Bpmn.createExecutableProcess(PROCESS)
        .camundaHistoryTimeToLive(1)
        .startEvent("start")
        .userTask("work")
        .name("Work")
        .endEvent("end")
        .done();
  }

  static void start(ProcessEngine engine, int n, long boot) {
    long t0 = System.nanoTime();
    engine.getRepositoryService()
        .createDeployment()
        .name(PROCESS)
        .addModelInstance(PROCESS + ".bpmn", process())
        .enableDuplicateFiltering(true)
        .deploy();
    for (int i = 0; i < n; i++) {
      engine.getRuntimeService().startProcessInstanceByKey(PROCESS, "bk-" + i);
    }
    Json.line("done", "start", "instances", n, "boot_ms", boot, "ms", (System.nanoTime() - t0) / 1_000_000);
  }

  static void work(ProcessEngine engine, String worker, long boot) {
    TaskService tasks = engine.getTaskService();
    long t0 = System.nanoTime();
    Json.line("worker", worker, "ready", System.currentTimeMillis());
    int ok = 0;
    int attempts = 0;
    int rounds = 0;
    int queryErrors = 0;
    while (true) {
      List<Task> open;
      long q0 = System.nanoTime();
      long qAt = System.currentTimeMillis();
      try {
        open = tasks.createTaskQuery().processDefinitionKey(PROCESS).orderByTaskId().asc().listPage(0, 20);
        queryErrors = 0;
      } catch (RuntimeException e) {
        Json.line("worker", worker, "task", "", "outcome", "query error", "at", qAt, "ms", (System.nanoTime() - q0) / 1_000_000,
            "error", Json.describe(e));
        if (++queryErrors == 5) {
          throw e;
        }
        continue;
      }
      rounds++;
      if (open.isEmpty()) {
        break;
      }
      for (Task t : open) {
        attempts++;
        long a0 = System.nanoTime();
        long at = System.currentTimeMillis();
        String outcome = "ok";
        String error = null;
        try {
          tasks.complete(t.getId());
          ok++;
        } catch (OptimisticLockingException e) {
          outcome = "OptimisticLockingException";
          error = Json.describe(e);
        } catch (NullValueException e) {
          outcome = e.getMessage() != null && e.getMessage().contains("Cannot find task") ? "not found" : "other";
          error = Json.describe(e);
        } catch (RuntimeException e) {
          outcome = "other";
          error = Json.describe(e);
        }
        Json.line("worker", worker, "task", t.getId(), "outcome", outcome, "at", at, "ms", (System.nanoTime() - a0) / 1_000_000, "error", error);
      }
    }
    Json.line("done", "work", "worker", worker, "ok", ok, "attempts", attempts, "rounds", rounds, "boot_ms", boot,
        "ms", (System.nanoTime() - t0) / 1_000_000);
  }
}
